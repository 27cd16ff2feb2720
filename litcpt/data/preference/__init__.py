"""Preference data for reward models and DPO: rows of any source to (prompt, chosen, rejected) pairs or best-of-N
groups, chat templates, tokenisation with truncation, and the batching (length buckets, even ranks, exact resume)."""
