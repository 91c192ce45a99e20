"""Docker CLI grammar: command tree, flag tables, pflag walker."""
