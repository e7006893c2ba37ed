"""The ISO 8583 channel at run time: the listener, one link per bank and the core's
timers, in one task group under the service's serving group.

Every `Effects` the core returns goes through `dispatch()`: its records join the journal's
next group, and its answers and bank messages leave once that group is durable
(Journal.call_when_durable). Nothing the core decides is seen outside before it is on disk.

Timers: the core says when it next needs the time (a bank deadline, a store-and-forward
retry, a hold expiry); the timer task sleeps until then, re-reading the switch's clock at
least every TICK_SECONDS_MAX, since that clock may be replaced (tests, simulations) or step.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from switch.banks.core import Acquirer, Effects
from switch.banks.link import BankLinkRunner
from switch.banks.listener import serve_listener
from switch.config import Config
from switch.core import Switch

log = logging.getLogger("onecard.banks")

# How late a timer may fire at most: 50 ms is 1 % of the default 5 s bank timeout.
TICK_SECONDS_MAX = 0.05


class PaymentsRuntime:
    def __init__(self, switch: Switch, config: Config) -> None:
        self.switch = switch
        self.config = config
        self.acquirer = Acquirer(switch.engine, config.banks)
        self.links = {
            link.id: BankLinkRunner(link, self, switch.clock) for link in config.banks.links
        }
        self._wakeup = anyio.Event()

    def dispatch(self, effects: Effects) -> None:
        """Journal the records; deliver answers and bank messages once they are durable."""
        if not effects:
            return
        journal = self.switch.journal
        position = journal.append(effects.records)
        answers, to_banks, links = effects.answers, effects.to_banks, self.links

        def deliver() -> None:
            for sink, data in answers:
                sink.deliver(data)
            for bank_id, fields in to_banks:
                links[bank_id].send_nowait(fields)

        journal.call_when_durable(position, deliver)
        self._wakeup.set()  # the next deadline may have moved

    async def run_timers(self) -> None:
        clock = self.switch.clock
        while True:
            deadline = self.acquirer.next_deadline_ms()
            delay = TICK_SECONDS_MAX
            if deadline is not None:
                delay = min(max(deadline - clock(), 0) / 1000, TICK_SECONDS_MAX)
            with anyio.move_on_after(delay):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()
            self.dispatch(self.acquirer.tick(clock()))


async def serve_iso8583(
    switch: Switch,
    config: Config,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ISO 8583 channel until `stop`; reports the listener's port."""
    runtime = PaymentsRuntime(switch, config)
    runtime.dispatch(runtime.acquirer.recover(switch.clock()))
    async with anyio.create_task_group() as group:
        for bank_id, link in runtime.links.items():
            group.start_soon(link.run, name=f"bank link {bank_id}")
        group.start_soon(runtime.run_timers, name="bank timers")
        iso = config.iso8583
        async with anyio.create_task_group() as serving:
            port = await serving.start(serve_listener, runtime, iso.host, iso.port, stop)
            runtime.acquirer.statistics.listen_port = port
            task_status.started(port)
        # The listener has stopped and answered what it decided. What is queued for banks
        # stays journalled and is sent by the next run.
        await switch.journal.flush()
        group.cancel_scope.cancel()
