"""The auth service: ML OAuth + PKCE login, seller sessions and the token broker."""

__all__: list[str] = []
