"""`werss-child`: the child agent's command line."""

import sys


def main() -> None:
    print("werss-child: the child agent is not built yet; see docs/PROTOCOL.md to write a client.",
          file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
