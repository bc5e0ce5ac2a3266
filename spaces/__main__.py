from spaces.cli import main

main()
