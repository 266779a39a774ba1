"""SELF-GUIDE: self-synthesized task data and fine-tuning."""

__version__ = "0.1.0"
