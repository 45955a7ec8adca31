"""The use cases: intake, send, poll, receive, acknowledge, retry, dead-letter, status feedback."""
