#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stockade developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: policy
short_description: Apply a stockade firewall policy, confirmed only while the host stays reachable
version_added: "0.1.0"
description:
  - Applies a stockade policy with C(stockade apply), which arms a rollback timer on the host.
  - A later task with O(state=confirmed) runs C(stockade confirm). Ansible reaches that task only over a
    fresh connection (put an C(ansible.builtin.meta) task with V(reset_connection) between the two), so a policy that cuts Ansible's own
    management path is never confirmed and the host's timer puts the previous ruleset back.
  - Idempotent. With O(state=applied), nothing is changed when the policy's ruleset is already live, as
    C(stockade apply --check) reads it.
  - In check mode nothing on the host changes; the packet classes whose verdict would change are the
    task's diff.
  - O(state=absent) runs C(stockade remove), which takes stockade's rules, sets and boot files out and
    leaves other tools' rules (Docker, fail2ban) in place.
options:
  src:
    description:
      - Path of the policy file on the managed host.
      - Mutually exclusive with O(content).
    type: path
  content:
    description:
      - The policy itself (TOML), for example C({{ lookup('file', 'policy.toml') }}); written to a
        temporary file on the managed host.
      - Mutually exclusive with O(src).
    type: str
  state:
    description:
      - V(applied) applies the policy with a rollback timer of O(confirm_timeout) seconds.
      - V(confirmed) confirms a pending apply (the timer stands down); nothing happens if none is pending.
      - V(absent) removes stockade's part of the ruleset and its boot files; the filter policies it set go
        back to ACCEPT (FORWARD stays where Docker runs); a pending apply ends. Nothing happens if nothing of
        stockade's is there.
    type: str
    choices: [applied, confirmed, absent]
    default: applied
  confirm_timeout:
    description:
      - Seconds after which the host restores its previous ruleset unless the apply is confirmed.
      - V(0) applies without a timer (confirmed at once); only for hosts Ansible does not reach over the
        network it filters.
    type: int
    default: 60
  backend:
    description: The firewall back end stockade uses on the host.
    type: str
    choices: [auto, nftables, iptables-nft, iptables-legacy]
    default: auto
  force:
    description:
      - Apply even if stockade's check says the current SSH clients or the policy's admins would lose access.
      - The rollback timer still protects the host.
    type: bool
    default: false
  netns:
    description:
      - Network namespace on the managed host to act in (for labs and tests); the host's own by default.
    type: str
  root:
    description:
      - File system root under which O(state=absent) looks for the boot files (for labs and tests); V(/) by
        default.
    type: path
  executable:
    description: The stockade command on the managed host.
    type: str
    default: stockade
attributes:
  check_mode:
    description: Changes nothing on the host; returns whether the policy would change it, and the diff.
    support: full
  diff_mode:
    description: The packet classes whose verdict would change, as the task's diff.
    support: full
notes:
  - Requires root on the managed host.
author:
  - stockade developers (@stockade)
'''

EXAMPLES = r'''
- name: Apply the firewall policy (rolls back in 120 s unless confirmed)
  stockade.firewall.policy:
    content: "{{ lookup('file', 'policies/' + inventory_hostname + '.toml') }}"
    confirm_timeout: 120
  register: firewall

- name: Reconnect, so that the next task proves the policy left Ansible's path open
  ansible.builtin.meta: reset_connection

- name: Confirm the policy
  stockade.firewall.policy:
    state: confirmed
  when: firewall is changed

- name: Take stockade off a host (its rules, sets and boot files)
  stockade.firewall.policy:
    state: absent
'''

RETURN = r'''
plan:
  description: What C(stockade apply --check --json) found before acting.
  returned: when O(state=applied)
  type: dict
  contains:
    changed:
      description: Whether the live ruleset differs from the policy's.
      type: bool
    backend:
      description: The back end used.
      type: str
    diff:
      description: The semantic diff (packet classes whose verdict changes), or null.
      type: dict
apply:
  description: The result of C(stockade apply --json) (version, previous, rollback_at, access, notes).
  returned: when the policy was applied
  type: dict
confirm:
  description: The result of C(stockade confirm --json).
  returned: when a pending apply was confirmed
  type: dict
remove:
  description: The result of C(stockade remove --json) (removed part, backend, policies, boot files changed).
  returned: when O(state=absent)
  type: dict
'''

import json
import os

from ansible.module_utils.basic import AnsibleModule


def _stockade(module, args):
    """Run stockade with JSON output; (rc, parsed stdout or None, stderr)."""
    cmd = [module.params['executable']] + args + ['--json']
    if module.params['netns']:
        cmd += ['--netns', module.params['netns']]
    rc, out, err = module.run_command(cmd)
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = None
    return rc, data, err


def _diff_text(diff):
    if not diff:
        return ''
    lines = []
    for c in diff.get('changes', []):
        lines.append('IPv{0} {1} {2}: {3}: {4} -> {5}'.format(
            c['family'], c['hook'], c['state'], c['text'], c['old']['verdict'], c['new']['verdict']))
    lines.append('{0} change(s) over {1} classes'.format(diff.get('changed', 0), diff.get('classes', 0)))
    return '\n'.join(lines) + '\n'


def _policy_path(module):
    if module.params['src']:
        if not os.path.isfile(module.params['src']):
            module.fail_json(msg='policy file {0} does not exist on the host'.format(module.params['src']))
        return module.params['src']
    path = os.path.join(module.tmpdir, 'policy.toml')
    with open(path, 'w') as f:
        f.write(module.params['content'])
    return path


def applied(module, result):
    path = _policy_path(module)
    backend = ['--backend', module.params['backend']]
    rc, plan, err = _stockade(module, ['apply', path, '--check'] + backend)
    if rc != 0 or plan is None:
        module.fail_json(msg='stockade apply --check failed: {0}'.format(err.strip()), rc=rc, plan=plan, **result)
    result['plan'] = plan
    result['changed'] = plan['changed']
    if plan['changed']:
        result['diff'] = {'before_header': 'live ruleset', 'after_header': 'policy',
                          'prepared': _diff_text(plan.get('diff'))}
    if module.check_mode or not plan['changed']:
        module.exit_json(**result)
    args = ['apply', path, '--confirm-timeout', str(module.params['confirm_timeout'])] + backend
    if module.params['force']:
        args.append('--force')
    rc, done, err = _stockade(module, args)
    if rc != 0 or done is None or done.get('ok') is False:
        module.fail_json(msg='stockade apply failed: {0}'.format(err.strip()), rc=rc, apply=done, **result)
    result['apply'] = done
    module.exit_json(**result)


def confirmed(module, result):
    rc, status, err = _stockade(module, ['status'])
    if status is None:
        module.fail_json(msg='stockade status failed: {0}'.format(err.strip()), rc=rc, **result)
    if not status.get('pending'):
        module.exit_json(**result)
    result['changed'] = True
    if module.check_mode:
        module.exit_json(**result)
    rc, done, err = _stockade(module, ['confirm'])
    if rc != 0:
        module.fail_json(msg='stockade confirm failed: {0}'.format(err.strip()), rc=rc, confirm=done, **result)
    result['confirm'] = done
    module.exit_json(**result)


def absent(module, result):
    args = ['remove']
    if module.params['root']:
        args += ['--root', module.params['root']]
    if module.check_mode:
        args.append('--check')
    rc, done, err = _stockade(module, args)
    if rc != 0 or done is None:
        module.fail_json(msg='stockade remove failed: {0}'.format(err.strip()), rc=rc, remove=done, **result)
    result['remove'] = done
    result['changed'] = done['changed']
    if done['changed']:
        lines = ['stockade part {0} ({1})'.format(done['removed'], done['backend'])] if done['removed'] else []
        lines += ['boot file {0}'.format(f) for f in done['files']]
        result['diff'] = {'before_header': 'stockade', 'after_header': 'absent', 'prepared': '\n'.join(
            '- ' + line for line in lines) + '\n'}
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            content=dict(type='str'),
            state=dict(type='str', default='applied', choices=['applied', 'confirmed', 'absent']),
            confirm_timeout=dict(type='int', default=60),
            backend=dict(type='str', default='auto', choices=['auto', 'nftables', 'iptables-nft', 'iptables-legacy']),
            force=dict(type='bool', default=False),
            netns=dict(type='str'),
            root=dict(type='path'),
            executable=dict(type='str', default='stockade'),
        ),
        mutually_exclusive=[('src', 'content')],
        required_if=[('state', 'applied', ('src', 'content'), True)],
        supports_check_mode=True,
    )
    if module.params['confirm_timeout'] < 0:
        module.fail_json(msg='confirm_timeout must be 0 or more seconds')
    result = dict(changed=False)
    if module.params['state'] == 'applied':
        applied(module, result)
    elif module.params['state'] == 'absent':
        absent(module, result)
    else:
        confirmed(module, result)


if __name__ == '__main__':
    main()
