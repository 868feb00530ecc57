"""The sms service: verification codes (``CodeService``) and a highly available SMS platform.

``python -m services.sms`` serves both gRPC services and runs the asynchronous delivery worker;
see ``docs/sms.md`` for the rules, the providers, health detection and configuration.
"""
