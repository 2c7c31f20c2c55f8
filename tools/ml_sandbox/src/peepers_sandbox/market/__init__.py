"""The marketplace by ML resource family (composed by ``peepers_sandbox.marketplace``)."""
