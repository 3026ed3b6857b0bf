"""Casemesh evidence service: uploads checked for size and real type, stored
once by content (sha256), readable by their owner and by agents, deleted
once no case needs them (`lifecycle`)."""
