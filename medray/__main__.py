from medray.cli import main

main()
