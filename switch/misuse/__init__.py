"""Misuse rules (regulation art. 12, 17): patterns in decisions that suggest a lent, cloned
or stolen card, raised as review flags for staff — never sanctions by themselves.

places.py   where terminals stand: positions by line and station/stop
rules.py    the rules, sans-I/O: decisions in (with their journal index), findings out
follower.py the process that runs them over the durable journal, off the switch's loop
wire.py     what the watcher and the follower say to each other over the follower's pipes
watcher.py  the task that starts the follower, tells it how far the journal is durable
            and journals the flags it finds
"""
