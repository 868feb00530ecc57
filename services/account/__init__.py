"""Account service: balances credited from paid rewards (``python -m services.account``)."""
