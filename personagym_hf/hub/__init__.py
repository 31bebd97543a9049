"""Publishing to the Hugging Face Hub.

- `push.py`: the push of an `hf_dataset/` folder: plan, safety gate, viewer checks, one commit, verify
- `connection.py`: requests to the Hub: timeouts, bounded retries, one-line errors
- `auth.py`: who a push runs as
- `uploads.py`: what a push sends, and what the Hub already has
- `viewer.py`: the staged files against the dataset viewer's limits
- `safety.py`: the secrets gate before a push, and the reviewed exceptions (baseline) it honours
- `ppopt.py`: the ppopt JSONL and its push
"""

from .push import PushError, PushOptions, PushResult, push_to_hub

__all__ = ["PushError", "PushOptions", "PushResult", "push_to_hub"]
