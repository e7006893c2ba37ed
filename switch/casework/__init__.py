"""Casework: the integrity file (regulation art. 13), complaints and reports (art. 14),
fraud recovery orders (art. 17) and misuse review flags (art. 12).

records.py   journal records; free text (complaints, answers) is sealed, never plain
state.py     the cases, rebuilt from the journal; complaint steps as a table of data
commands.py  a request -> the records that carry it out, or a ServiceError
config.py    deadlines
"""
