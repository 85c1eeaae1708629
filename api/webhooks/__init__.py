"""Provider webhooks: verified before anything is read or changed."""
