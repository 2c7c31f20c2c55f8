from peepers_catalog.adapters.redis_store import RedisItemStore
from peepers_catalog.adapters.redis_sync import RedisSyncCheckpoints

__all__ = ["RedisItemStore", "RedisSyncCheckpoints"]
