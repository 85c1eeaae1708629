"""The ``balance-escalation`` workflow and the pure decision core it shares with previews."""
