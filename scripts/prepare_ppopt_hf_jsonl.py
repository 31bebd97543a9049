"""Turn exported samples into the ppopt JSONL: one flat line per query variant (the query_rewrite view).

python scripts/prepare_ppopt_hf_jsonl.py --input output/training_data/train_samples.json --output hf_dataset.jsonl
"""

import argparse
import sys

from personagym_hf.hub.ppopt import prepare_ppopt_jsonl
from personagym_hf.wording import plural


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, nargs="+", help="samples file(s): *_samples.json or .jsonl")
    parser.add_argument("--output", required=True, help="the JSONL to write")
    args = parser.parse_args(argv)
    try:
        count = prepare_ppopt_jsonl(args.input, args.output)
    except (OSError, ValueError) as e:
        print(f"prepare_ppopt_hf_jsonl: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {plural(count, 'line')} to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
