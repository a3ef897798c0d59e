import sys


def main() -> None:
    print("chatterbox-server: not implemented yet (see the inference server issue)", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
