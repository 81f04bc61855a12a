from nucleus.cli.entry import main

main()
