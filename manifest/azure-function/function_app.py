"""Azure Functions entry point (Python v2 programming model): a timer-triggered sync pass.

Deploy this folder as the Function App root with `requirements.txt`; the schedule comes from the
`M365SYNC_SCHEDULE` application setting (NCRONTAB, e.g. "0 */5 * * * *" for every five minutes).
"""

import azure.functions as func

from connector.azure_function import run_sync_from_env

app = func.FunctionApp()


@app.timer_trigger(schedule="%M365SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def m365sync(timer: func.TimerRequest) -> None:
    """One incremental sync pass of every configured mailbox."""
    run_sync_from_env()
