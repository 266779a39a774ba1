"""The SelfGuideJob operator (kopf): observe a job and its stage Jobs, decide the next status and actions, act."""
