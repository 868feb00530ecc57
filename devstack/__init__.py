"""Local development stack: infrastructure processes and the whole suite (``make run``)."""
