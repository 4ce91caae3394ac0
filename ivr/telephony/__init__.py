"""Telephony adapters: Asterisk itself, FastAGI, ARI and AMI. They translate; the engine decides."""
