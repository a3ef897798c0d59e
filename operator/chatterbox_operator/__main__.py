import sys


def main() -> None:
    print("chatterbox-operator: not implemented yet (see the operator issue)", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
