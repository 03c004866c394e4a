from auditsink.cli import main

main()
