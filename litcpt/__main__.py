from litcpt.cli.main import main

main()
