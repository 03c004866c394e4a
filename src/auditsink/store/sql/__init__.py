"""What both SQL stores share: the selector's SQL, the read queries, and their dialects."""
