from datetime import datetime
from typing import Any

class Job:
    id: str
    name: str
    next_run_time: datetime | None
    coalesce: bool
    max_instances: int
    misfire_grace_time: int | None
    def modify(self, **changes: Any) -> Job: ...
