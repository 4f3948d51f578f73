"""The one exception type for mistakes a user can fix."""


class UserError(ValueError):
  """A bad value, file or folder supplied by the user.

  The message is one line that names the bad value or file and says what to do;
  the command-line entry points print it without a traceback and exit 1.
  """


class TrainingDiverged(UserError):
  """The training loss became NaN or Inf; the message names the epoch."""
