"""The errors wssbench raises. The CLI turns each into a one-line message and an exit code."""


class WssbenchError(Exception):
    """Base of every error the CLI reports as a one-line message."""

    exit_code = 1


class UsageError(WssbenchError):
    """A bad command line: unknown component name, bad option value, missing argument."""

    exit_code = 2


class DataError(WssbenchError):
    """A dataset, image, mask or prediction that is missing, unreadable or malformed."""


class PluginError(WssbenchError):
    """A plugin that breaks the contract: duplicate name, bad registration."""


class OfflineError(WssbenchError):
    """Something had to be downloaded and the network is not there."""
