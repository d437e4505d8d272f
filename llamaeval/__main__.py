from llamaeval.cli import main

raise SystemExit(main())
