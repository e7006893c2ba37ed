"""Urban transport: fare tables, journeys, transfers, concessions, gate rules, deny-list.

fares.py     the fare table (TOML, versioned) and pricing of one ride — pure functions
rides.py     a card's transit state and the decision for one tap — pure, time passed in
denylist.py  the versioned list of blocked cards gates download
"""
