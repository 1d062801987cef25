from ao.cli import main

main()
