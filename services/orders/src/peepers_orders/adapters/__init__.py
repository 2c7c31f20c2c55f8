from peepers_orders.adapters.mail_ledger import ChangelogMailLedger, RedisMailView
from peepers_orders.adapters.redis_analytics import RedisAnalytics
from peepers_orders.adapters.redis_store import RedisOrderStore, RedisSellerDirectory
from peepers_orders.adapters.smtp import SmtpMailSender

__all__ = [
    "ChangelogMailLedger",
    "RedisAnalytics",
    "RedisMailView",
    "RedisOrderStore",
    "RedisSellerDirectory",
    "SmtpMailSender",
]
