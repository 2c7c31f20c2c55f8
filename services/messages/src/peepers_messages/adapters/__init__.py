from peepers_messages.adapters.redis_mirror import RedisMirror
from peepers_messages.adapters.redis_views import RedisSubmissions, RedisTickets

__all__ = ["RedisMirror", "RedisSubmissions", "RedisTickets"]
