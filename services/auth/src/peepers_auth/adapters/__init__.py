from peepers_auth.adapters.ml_oauth import HttpMlOAuth
from peepers_auth.adapters.redis_store import RedisLoginStates, RedisSellerStore, RedisSessions

__all__ = ["HttpMlOAuth", "RedisLoginStates", "RedisSellerStore", "RedisSessions"]
