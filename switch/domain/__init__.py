"""The card domain: identifiers, holders, cards, accounts and terminals."""
