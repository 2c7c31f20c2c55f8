"""The REST API's handlers, one module per ML resource family."""
