"""The Typer front end of netstate. The library (netstate/) never imports this package."""
