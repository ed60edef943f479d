"""The use-cases of the auth server. They know the storage Protocols, never HTTP."""
