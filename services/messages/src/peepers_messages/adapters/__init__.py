from peepers_messages.adapters.redis_mirror import RedisMirror
from peepers_messages.adapters.redis_views import (
    RedisConversations,
    RedisSubmissions,
    RedisTickets,
)

__all__ = ["RedisConversations", "RedisMirror", "RedisSubmissions", "RedisTickets"]
