#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stockade developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: facts
short_description: Read stockade's status on a host as facts
version_added: "0.1.0"
description:
  - Runs C(stockade status --json) and the back-end tools' version commands; changes nothing.
  - Sets C(ansible_facts.stockade) with the applied and confirmed versions, a pending rollback, drift
    (stockade's rules changed by hand), alarms, the back end, the number of stockade rules live, the
    current bans with their expiry, each blocklist feed's entries, age and last error, and the tools'
    versions.
options:
  netns:
    description: Network namespace on the managed host to read (for labs and tests).
    type: str
  executable:
    description: The stockade command on the managed host.
    type: str
    default: stockade
attributes:
  check_mode:
    description: The module only reads; it runs alike in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
  facts:
    description: Sets C(ansible_facts.stockade).
    support: full
author:
  - stockade developers (@stockade)
'''

EXAMPLES = r'''
- name: Read stockade's status
  stockade.firewall.facts:

- name: Fail on drift or an alarm
  ansible.builtin.assert:
    that:
      - not ansible_facts.stockade.drift
      - ansible_facts.stockade.alarms | length == 0
'''

RETURN = r'''
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: complex
  contains:
    stockade:
      description: stockade's status on the host.
      type: dict
      returned: always
      sample:
        backend: nftables
        live_version: ae72757d52cd
        drift: false
        alarms: []
        pending: null
        rules: 42
        bans: [{address: 203.0.113.9, set: stk-bans-ip4, expires_in: 512}]
        feeds: [{feed: spamhaus, entries: 1042, age_seconds: 600, last_error: null}]
        versions: {nft: "nftables v1.0.6 (Lester Gooch #5)"}
'''

import json

from ansible.module_utils.basic import AnsibleModule

KEYS = ('netns', 'backend', 'live_version', 'stockade_rules_live', 'applied', 'confirmed', 'pending', 'alarms',
        'drift', 'drift_lines', 'others', 'bans', 'feeds')
TOOLS = (('nft', ['nft', '--version']), ('iptables', ['iptables', '--version']), ('ipset', ['ipset', '--version']))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            netns=dict(type='str'),
            executable=dict(type='str', default='stockade'),
        ),
        supports_check_mode=True,
    )
    cmd = [module.params['executable'], 'status', '--json']
    if module.params['netns']:
        cmd += ['--netns', module.params['netns']]
    rc, out, err = module.run_command(cmd)
    try:
        status = json.loads(out)
    except ValueError:
        module.fail_json(msg='stockade status failed: {0}'.format(err.strip()), rc=rc)
    facts = dict((k, status.get(k)) for k in KEYS)
    facts['rules'] = len(status.get('rules') or [])
    versions = {}
    for name, argv in TOOLS:
        path = module.get_bin_path(argv[0])
        if path:
            trc, tout, terr = module.run_command([path] + argv[1:])
            if trc == 0:
                versions[name] = (tout or terr).strip().splitlines()[0] if (tout or terr).strip() else ''
    facts['versions'] = versions
    module.exit_json(changed=False, ansible_facts=dict(stockade=facts))


if __name__ == '__main__':
    main()
