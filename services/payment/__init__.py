"""The payment service: orders paid through WeChat Pay (API v3, Native)."""
