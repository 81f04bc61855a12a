from nucleus.cli.main import main

main()
