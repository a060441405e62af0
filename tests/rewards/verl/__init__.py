"""Reward files as VERL users have them: `gsm8k.py` is VERL's own (verl/utils/reward_score/gsm8k.py at
b178a3c, Apache-2.0, unchanged); `shapes.py` holds the other signatures VERL's and TRL's docs describe."""
