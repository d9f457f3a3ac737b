"""``python -m dgp_toolkit``: the ``dgp-tool`` command; what ``torchrun -m dgp_toolkit restore ...``
runs in each rank."""

from dgp_toolkit.cli.app import main

if __name__ == "__main__":
    main()
