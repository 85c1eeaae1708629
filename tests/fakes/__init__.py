"""Local stand-ins for outside systems, driven through the real SDKs over loopback HTTP."""
