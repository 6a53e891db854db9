'use strict';
'require view';
'require form';

// /etc/config/leash, the UCI form of SPEC §3. leash validates on reload
// and keeps the running policy when a change does not validate.
var verdicts = [ 'allow', 'alert', 'block', 'quarantine' ];

function listValue(s, name, title, values, dflt) {
	var o = s.option(form.ListValue, name, title);
	values.forEach(function(v) { o.value(v); });
	if (dflt)
		o.default = dflt;
	return o;
}

return view.extend({
	render: function() {
		var m, s, o;

		m = new form.Map('leash', _('leash: settings'),
			_('The consent firewall: what each device may reach, and what happens when it tries anything else.'));

		s = m.section(form.TypedSection, 'daemon', _('Daemon'));
		s.anonymous = true;
		listValue(s, 'mode', _('Mode'), [ 'monitor', 'enforce' ], 'monitor').description = _('monitor: alert only, never touch traffic');
		o = s.option(form.DynamicList, 'lan', _('LAN interfaces'));
		o.default = 'br-lan';
		s.option(form.Value, 'alert_interval', _('Alert interval'), _('Repeat suppression per device and destination, e.g. 1h')).placeholder = '1h';
		listValue(s, 'dns_hold', _('Hold DNS answers'), [ 'auto', 'on', 'off', 'external' ], 'auto');
		o = s.option(form.Value, 'conntrack_buffer', _('Conntrack event buffer'), _('auto: RAM/64, between 1 MiB and 64 MiB; or a size such as 8MiB. Events past it are lost and a resync catches up'));
		o.placeholder = 'auto';
		o.validate = function(id, v) { return (v == '' || v == 'auto' || /^[0-9]+(\.[0-9]+)? ?(B|kB|KB|MB|GB|KiB|MiB|GiB)?$/.test(v)) ? true : _('auto or a size such as 8MiB'); };
		s.option(form.Flag, 'keep_on_exit', _('Keep quarantines on exit'));
		s.option(form.Value, 'leases', _('DHCP lease file')).placeholder = '/tmp/dhcp.leases';

		s = m.section(form.TypedSection, 'defaults', _('Defaults'));
		s.anonymous = true;
		s.option(form.Value, 'profile', _('Profile of unlisted devices'));
		s.option(form.Value, 'learn', _('Learning window'), _('A new device\'s destinations in this time become consents, e.g. 24h; 0: off')).placeholder = '0';

		s = m.section(form.TypedSection, 'geoip', _('GeoIP databases'));
		s.anonymous = true;
		s.addremove = true;
		s.option(form.Value, 'country_db', _('Country database (.mmdb)'));
		s.option(form.Value, 'asn_db', _('ASN database (.mmdb)'));

		s = m.section(form.TypedSection, 'profile', _('Profiles'));
		s.addremove = true;
		listValue(s, 'unlisted', _('Unlisted destinations'), verdicts, 'allow');
		listValue(s, 'denied', _('Denied destinations'), verdicts, 'block');
		s.option(form.DynamicList, 'deny', _('Deny lists'));
		s.option(form.Value, 'upload_alert', _('Upload alert'), _('e.g. 50MB to one unconsented destination'));
		listValue(s, 'dns_filter', _('DNS filter'), [ 'off', 'nxdomain' ], 'off');
		listValue(s, 'dns_bypass', _('Other resolvers, DoT, DoH'), [ 'allow', 'alert', 'block' ], 'alert');

		s = m.section(form.TypedSection, 'list', _('Lists'));
		s.addremove = true;
		s.option(form.DynamicList, 'files', _('Files'));
		s.option(form.DynamicList, 'selectors', _('Selectors'));
		s.option(form.DynamicList, 'urls', _('URLs'));
		s.option(form.Value, 'refresh', _('Refresh'), _('How often the URLs are fetched, e.g. 24h')).placeholder = '24h';

		s = m.section(form.TypedSection, 'notify', _('Notifications'));
		s.anonymous = true;
		s.addremove = true;
		s.option(form.Value, 'mqtt', _('MQTT broker'), _('e.g. mqtt://192.168.1.2:1883'));
		s.option(form.Value, 'mqtt_user', _('MQTT user'));
		o = s.option(form.Value, 'mqtt_password', _('MQTT password'));
		o.password = true;
		s.option(form.Value, 'mqtt_topic', _('MQTT topic')).placeholder = 'leash';
		s.option(form.Flag, 'mqtt_commands', _('Accept quarantine/release over MQTT'));
		s.option(form.Value, 'exec', _('Program run per alert'));
		s.option(form.DynamicList, 'on', _('Alert verbs to notify'));

		s = m.section(form.TypedSection, 'device', _('Devices'));
		s.anonymous = true;
		s.addremove = true;
		s.option(form.Value, 'mac', _('MAC address')).datatype = 'macaddr';
		s.option(form.Value, 'name', _('Name'));
		s.option(form.Value, 'profile', _('Profile'));
		s.option(form.DynamicList, 'consent', _('Consents'));

		return m.render();
	}
});
