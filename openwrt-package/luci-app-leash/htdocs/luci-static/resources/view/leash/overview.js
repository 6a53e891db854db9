'use strict';
'require view';
'require rpc';
'require poll';

// The daemon's JSON is the model: this view only lays it out.
var callStatus = rpc.declare({ object: 'leash', method: 'status', expect: { '': {} } });
var callAlerts = rpc.declare({ object: 'leash', method: 'alerts', params: [ 'since' ], expect: { '': {} } });

function duration(s) {
	s = +s || 0;
	var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
	return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + m + 'm';
}

return view.extend({
	load: function() {
		return Promise.all([ callStatus(), callAlerts('1h') ]);
	},

	renderStatus: function(st) {
		if (st.error)
			return E('div', { 'class': 'alert-message warning', 'id': 'leash-status' }, [ _('leash is not answering: %s').format(st.error) ]);

		var rows = [
			[ _('Mode'), st.mode ],
			[ _('Uptime'), duration(st.uptime) ],
			[ _('Devices'), st.devices ],
			[ _('Quarantined'), st.quarantined ],
			[ _('Flows judged'), st.flows_judged ],
			[ _('Rules in the kernel'), st.rules_in_kernel ],
			[ _('Events lost'), st.events_lost ],
			[ _('Resyncs'), st.resyncs ],
			[ _('Version'), st.version ]
		];

		return E('table', { 'class': 'table', 'id': 'leash-status' }, rows.map(function(r) {
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, [ r[0] ]),
				E('td', { 'class': 'td left', 'data-key': r[0] }, [ String(r[1] != null ? r[1] : '-') ])
			]);
		}));
	},

	renderAlerts: function(res) {
		if (res.error)
			return E('p', { 'id': 'leash-alerts' }, [ E('em', {}, [ _('Recent alerts are not available: %s').format(res.error) ]) ]);

		var alerts = res.alerts || [];
		if (!alerts.length)
			return E('p', { 'id': 'leash-alerts' }, [ E('em', {}, [ _('No alerts in the last hour.') ]) ]);

		return E('ul', { 'id': 'leash-alerts' }, alerts.slice(-20).map(function(a) {
			return E('li', {}, [ typeof a == 'string' ? a : (a.line || JSON.stringify(a)) ]);
		}));
	},

	render: function(data) {
		var self = this;
		var node = E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ _('leash: consent firewall') ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, [ _('Status') ]), this.renderStatus(data[0]) ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, [ _('Latest alerts') ]), this.renderAlerts(data[1]) ])
		]);

		poll.add(function() {
			return Promise.all([ callStatus(), callAlerts('1h') ]).then(function(d) {
				var s = node.querySelector('#leash-status'), a = node.querySelector('#leash-alerts');
				s.parentNode.replaceChild(self.renderStatus(d[0]), s);
				a.parentNode.replaceChild(self.renderAlerts(d[1]), a);
			});
		}, 10);

		return node;
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
