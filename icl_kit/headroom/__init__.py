"""Headroom: before any training, what the choice of demonstrations could gain with this model, and how much
signal the training reward carries (`icl-kit headroom`, notebook 00_headroom; docs/headroom.md).

Modules: measure (per-question accuracies and rewards through the answer cache), summary (the table with its
intervals, the reward's variance decomposition, the share of the gap a selector recovers), signal (the variance
decomposition and the GRPO groups it implies), verdict (the plain-words answer), stage (the resumable stage and
its files), plots (the figure).
"""
