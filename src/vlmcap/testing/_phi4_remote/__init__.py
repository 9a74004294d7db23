"""The remote-code modules of the tiny Phi-4-multimodal checkpoint, as real (linted) files.

``vlmcap.testing.tiny_checkpoint("phi4")`` copies them into the checkpoint folder, where
transformers loads them with ``trust_remote_code=True``; nothing in vlmcap imports them.
"""
