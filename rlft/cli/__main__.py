from rlft.cli.app import main

main()
