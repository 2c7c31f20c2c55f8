"""The messages service: questions answered, post-sale conversations, claims as tickets."""

__all__: list[str] = []
