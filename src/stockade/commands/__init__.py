"""The command layer: one module per `stockade` command, each defining `command`. A command reads
its inputs through `inputs`, calls the library, prints, and picks its exit status from `exitcodes`;
a deliberate error (StockadeError) that escapes it is printed by `errors.fail`. The library below
never prints or exits."""

# The modules of stockade.commands that are commands, each imported only when it runs (or for --help).
COMMANDS = ("analyze", "apply", "audit", "ban", "check", "compile", "confirm", "convert", "demo", "diff", "explain",
            "feeds", "init", "integrate", "lab", "lint", "logs", "parse", "persist", "remove", "repair", "rollback",
            "status", "unban")
